"""Remote access's trust layer (issue 20): pairing a phone on the LAN, then signaling
messages sealed end to end between that phone and the camera, so the rendezvous (an
MQTT broker) that relays them sees only ciphertext and can neither forge, replay nor
redirect them.

- keys.py: P-256 keys as exchanged, the camera's long-term key (made once, kept).
- devices.py: the paired devices, one private JSON file in the state directory.
- pairing.py: offers (QR code, short code) and accepting a phone's request.
- sealing.py: the message construction, and why it was chosen.
- refused.py: the one exception for anything refused, with a reason to log.

web/remote_crypto.js is the page's side of sealing, with WebCrypto.
"""
