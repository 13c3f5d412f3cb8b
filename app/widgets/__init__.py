"""Kivy widgets of the IonPlan desktop application."""
