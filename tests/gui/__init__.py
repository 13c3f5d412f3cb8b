"""GUI tests: the real Kivy app in a real (offscreen or Xvfb) window, driven by tests.gui.driver."""
