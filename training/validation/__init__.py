"""Stage 4, splits: the purged, embargoed hold-out and the purged K-fold / CPCV splitters (scikit-learn's API).

``split_invariants`` states what every split must satisfy (no training label window touching a test
period, the embargo after it), so the splitters' tests and property tests share one definition.
"""
