"""Action chunks -> safe, timed joint commands: blending, limits, watchdog."""
