"""The Qt application: main window and dockable panels over ``neurolab_gui.core``.  Panels hold no logic."""
