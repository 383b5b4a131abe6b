"""Hardware: serial link to the firmware, cameras, calibration."""
