import sys

from diffana.cli import main

sys.exit(main())
