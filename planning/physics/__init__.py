"""First-principles beam physics used to generate machine data (stopping, straggling, scattering,
nuclear interactions)."""
