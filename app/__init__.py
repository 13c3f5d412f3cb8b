"""IonPlan desktop application (Kivy). Calls planning.api only; never computes physics."""
