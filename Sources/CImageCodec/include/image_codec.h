// Placeholder header; the image codec work replaces it.
#pragma once
int dcn_image_codec_version(void);
