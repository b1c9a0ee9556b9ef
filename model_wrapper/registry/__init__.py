"""The registry side: one parser of models:/ URIs, logging and registering a version (and
moving its alias), and re-wrapping a registered version with the current pyfunc."""
