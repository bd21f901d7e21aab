"""fleet-artifacts: an artifact store for CI fleets on Azure Blob Storage.

Bytes go to Blob Storage under ``fleet/<productId>/<jobId>/<id>-<kind>``; small
pointer documents go to a pointer store; every fetch returns a freshly signed,
short-lived URL for that one blob.
"""

__version__ = "0.1.0"
