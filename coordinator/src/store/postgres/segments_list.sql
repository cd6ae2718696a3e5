SELECT path FROM segments
