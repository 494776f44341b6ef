#include "image_codec.h"
int dcn_image_codec_version(void) { return 0; }
