"""Data files shipped with NeuroLab (installed as ``neurolab_gui.resources``): bias presets, udev rule, icons, samples."""
