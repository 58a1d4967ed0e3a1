"""Operator tools: add-peer/remove-peer with QR codes, doctor, check-handshakes, exporter."""
