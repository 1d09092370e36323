"""DYNAP-SE1: topology, bias tables, chip-word and event-stream codecs, the USB transport and the Board."""
