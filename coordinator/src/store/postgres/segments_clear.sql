DELETE FROM segments
