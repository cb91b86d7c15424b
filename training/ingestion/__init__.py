"""Stage 1, ingest: a user's file of daily bars checked, stamped at the session close, upserted as one transaction.

``bar_files`` reads and validates (one date format per file, implausible bars, symbols); ``upsert`` writes
one bar per (symbol, trading date) into ``market_data.ohlcv_daily``, deciding with a read before it writes.
"""
