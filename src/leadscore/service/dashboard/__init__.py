"""The ML insights dashboard: its routes (the page, sign-in and its JSON endpoints), the panels' data
from the model metadata and the prediction log, the app's cache of the heavy panels, and the page's
static files (HTML, script, styles)."""
