import sys

from lerobot_pipeline.cli import main

sys.exit(main())
