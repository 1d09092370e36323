"""``python -m robot_sim``: serve a simulated PushBot on a pty or TCP port."""

from .pushbot import main

raise SystemExit(main())
