from peercam.cli import main

raise SystemExit(main())
