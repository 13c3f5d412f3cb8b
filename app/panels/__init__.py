"""Side and bottom panels of the main window: patient, plan setup, dose display, task bar."""
