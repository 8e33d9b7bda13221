import sys

from genrecsys.cli.main import main

sys.exit(main())
