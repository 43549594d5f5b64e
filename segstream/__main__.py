from segstream.cli import main

raise SystemExit(main())
