from maskgen.cli.main import main

raise SystemExit(main())
