from ossmount.cli import main

raise SystemExit(main())
