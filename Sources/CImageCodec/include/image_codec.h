// C shim over libjpeg-turbo and libpng for DCNData. Only Sources/DCNData/ImageCodec.swift
// calls these functions.
//
// Every function takes a memory buffer (the Swift side reads files) and reports failure through
// a status code plus a message written into a caller-provided buffer. The libraries' error
// handlers are replaced with setjmp/longjmp ones, so a truncated or corrupt file returns an
// error: nothing here calls exit() or abort(). Pixel and encoded buffers are malloc'd and must
// be released with dcn_codec_free.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes returned by every function.
typedef enum {
    DCN_CODEC_OK = 0,
    DCN_CODEC_TRUNCATED = 1,    ///< the data ends before the image does
    DCN_CODEC_CORRUPT = 2,      ///< the library rejected the data (bad marker, CRC, header...)
    DCN_CODEC_UNSUPPORTED = 3,  ///< a valid file in a variant we do not decode
    DCN_CODEC_TOO_LARGE = 4,    ///< more pixels than DCN_CODEC_MAX_PIXELS (decompression bomb)
    DCN_CODEC_NO_MEMORY = 5,
    DCN_CODEC_BAD_ARGUMENT = 6
} dcn_codec_status;

/// Largest accepted width * height (Pillow's decompression-bomb error threshold).
#define DCN_CODEC_MAX_PIXELS 178956970L

/// A decoded image: interleaved 8-bit RGB rows, top to bottom, no padding.
typedef struct {
    uint8_t *pixels;     ///< width * height * 3 bytes, malloc'd; free with dcn_codec_free
    int32_t width;
    int32_t height;
    /// EXIF orientation tag (1..8) of the file, 0 when it has no EXIF orientation. Not applied.
    int32_t orientation;
    /// Number of warnings the decoder recovered from (for example extraneous bytes in a JPEG);
    /// the first one's text is left in the message buffer even when the call succeeds.
    int32_t warnings;
} dcn_decoded_image;

/// Decodes a baseline or progressive JPEG to RGB. Grayscale is replicated, CMYK/YCCK is converted
/// as Pillow's convert("RGB") does (Adobe inverted CMYK), and the EXIF orientation is reported.
int dcn_decode_jpeg(const uint8_t *data, size_t size, dcn_decoded_image *out,
                    char *message, size_t message_capacity);

/// Decodes a PNG to RGB like Pillow's convert("RGB"): palette expanded, gray replicated,
/// alpha (channel or tRNS) dropped, 16-bit samples reduced to their high byte. Reports the
/// orientation of an eXIf chunk when there is one.
int dcn_decode_png(const uint8_t *data, size_t size, dcn_decoded_image *out,
                   char *message, size_t message_capacity);

/// Reads only the headers of a JPEG / PNG: width, height (as stored, before orientation) and
/// orientation; out->pixels stays NULL. A PNG's eXIf chunk is seen only if it precedes the
/// image data.
int dcn_probe_jpeg(const uint8_t *data, size_t size, dcn_decoded_image *out,
                   char *message, size_t message_capacity);
int dcn_probe_png(const uint8_t *data, size_t size, dcn_decoded_image *out,
                  char *message, size_t message_capacity);

/// Encodes interleaved RGB (width * height * 3 bytes) as a JPEG with quality 1...100
/// (4:2:0 chroma subsampling, like Pillow's default). *out is malloc'd.
int dcn_encode_jpeg(const uint8_t *rgb, int32_t width, int32_t height, int32_t quality,
                    uint8_t **out, size_t *out_size, char *message, size_t message_capacity);

/// Encodes interleaved RGB as an 8-bit RGB PNG (zlib level 6, like Pillow). *out is malloc'd.
int dcn_encode_png(const uint8_t *rgb, int32_t width, int32_t height,
                   uint8_t **out, size_t *out_size, char *message, size_t message_capacity);

/// A decoded label map: one byte per pixel holding the stored sample (the palette index of a
/// palette PNG, the gray value of a grayscale PNG), rows top to bottom, no padding.
typedef struct {
    uint8_t *samples;    ///< width * height bytes, malloc'd; free with dcn_codec_free
    int32_t width;
    int32_t height;
    int32_t is_palette;  ///< 1 for a palette PNG, 0 for grayscale
} dcn_decoded_labels;

/// Decodes a palette or grayscale PNG (bit depth 1, 2, 4 or 8; interlaced or not) to its raw
/// samples without any conversion: the palette is not applied and small bit depths are unpacked,
/// not scaled. Any other PNG (RGB, alpha, 16-bit) returns DCN_CODEC_UNSUPPORTED with a message
/// that names its colour type and bit depth.
int dcn_decode_png_samples(const uint8_t *data, size_t size, dcn_decoded_labels *out,
                           char *message, size_t message_capacity);

/// Encodes one byte per pixel as an 8-bit PNG: grayscale when palette is NULL, otherwise a
/// palette PNG with palette_entries (1...256) RGB triples. *out is malloc'd.
int dcn_encode_png_samples(const uint8_t *samples, int32_t width, int32_t height,
                           const uint8_t *palette, int32_t palette_entries,
                           uint8_t **out, size_t *out_size, char *message, size_t message_capacity);

/// Reads the EXIF orientation (1..8) from a TIFF-structured EXIF block (starting at "II"/"MM",
/// optionally preceded by "Exif\0\0"). Returns 0 when absent or malformed.
int dcn_exif_orientation(const uint8_t *exif, size_t size);

/// Frees a buffer returned by this module.
void dcn_codec_free(void *pointer);

#ifdef __cplusplus
}
#endif
