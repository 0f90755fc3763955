"""Local stand-ins for Google Cloud: the Pub/Sub emulator launcher and the EE emulator."""
