-- callbridge store: an agent's answering-machine treatment for its outbound calls, used when a
-- call or campaign does not set its own. Identical on both backends.
-- NULL action: AMD off. 'hangup': end the call on a machine. 'message': leave voicemail_message
-- after the beep.
ALTER TABLE agents ADD COLUMN voicemail_action TEXT CHECK (voicemail_action IN ('hangup', 'message'));
ALTER TABLE agents ADD COLUMN voicemail_message TEXT;
