try:
    from tsinspect.cli import run
except KeyboardInterrupt:  # Ctrl-C while Python imports the command line: no traceback
    raise SystemExit(130) from None

run()
