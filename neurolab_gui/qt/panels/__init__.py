"""One module per dockable panel.  Each panel subscribes to the core and calls it; none holds logic."""
