"""IonPlan desktop application (Kivy). Calls planning.api for all work and reads planning's
types and results; never imports the dose engine or the kernels, never computes physics."""
