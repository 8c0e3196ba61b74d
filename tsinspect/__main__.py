from tsinspect.cli import main

raise SystemExit(main())
