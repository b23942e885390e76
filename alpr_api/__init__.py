"""``alpr-api``: a drop-in HTTP service in front of Triton for clients written against
CodeProject.AI's licence-plate module (Blue Iris, Agent DVR, Home Assistant) or Plate
Recognizer's Snapshot API.

Data flow: upload (``upload``: multipart file or base64) -> checked and decoded
(``upload``) -> read through Triton as ``alpr-evaluate`` reads a photo (``reader``:
vehicles, then the ``alpr`` ensemble, then the edge client's choice, voting and regional
formats) -> answered in the client's own shape (``codeproject``, ``platerecognizer``).
"""
