"""The HTTP shell: handlers parse, call one core method, render; URLs are built here."""
