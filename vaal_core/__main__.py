from vaal_core.cli import main

raise SystemExit(main())
