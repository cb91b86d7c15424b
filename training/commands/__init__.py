"""The CLI, one thin module per command: parse options, call a stage, print. Heavy imports stay inside."""
