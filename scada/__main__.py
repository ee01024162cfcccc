from scada.cli import main

raise SystemExit(main())
