// JPEG and PNG decoding/encoding over libjpeg-turbo and libpng with error handlers that return.
//
// Both libraries report fatal errors through a callback that must not return. The default
// libjpeg callback prints and calls exit(); here each call installs a handler that records the
// message and longjmps back to the entry point, which frees everything and returns a status.
// Pointers that are assigned after setjmp and used after longjmp are volatile-qualified.
#include "image_codec.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

static void set_message(char *message, size_t capacity, const char *text) {
    if (message != NULL && capacity > 0) snprintf(message, capacity, "%s", text);
}

void dcn_codec_free(void *pointer) { free(pointer); }

static int check_size(int64_t width, int64_t height, char *message, size_t capacity) {
    if (width <= 0 || height <= 0) {
        set_message(message, capacity, "image has zero width or height");
        return DCN_CODEC_CORRUPT;
    }
    if (width * height > DCN_CODEC_MAX_PIXELS) {
        char text[160];
        snprintf(text, sizeof text, "image of %lldx%lld pixels exceeds the limit of %ld pixels",
                 (long long)width, (long long)height, (long)DCN_CODEC_MAX_PIXELS);
        set_message(message, capacity, text);
        return DCN_CODEC_TOO_LARGE;
    }
    return DCN_CODEC_OK;
}

// ---------------------------------------------------------------------------------------------
// EXIF: the TIFF header ("II*\0" or "MM\0*"), the offset of IFD0, then 12-byte entries
// (tag, type, count, value). Orientation is tag 0x0112, type SHORT (3), count 1, stored in the
// first two bytes of the value field.

static uint32_t read_u16(const uint8_t *p, int little) {
    return little ? (uint32_t)(p[0] | (p[1] << 8)) : (uint32_t)((p[0] << 8) | p[1]);
}

static uint32_t read_u32(const uint8_t *p, int little) {
    return little ? ((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24))
                  : (((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3]);
}

int dcn_exif_orientation(const uint8_t *exif, size_t size) {
    if (exif == NULL) return 0;
    if (size >= 6 && memcmp(exif, "Exif\0\0", 6) == 0) {
        exif += 6;
        size -= 6;
    }
    if (size < 8) return 0;
    int little;
    if (exif[0] == 'I' && exif[1] == 'I') little = 1;
    else if (exif[0] == 'M' && exif[1] == 'M') little = 0;
    else return 0;
    if (read_u16(exif + 2, little) != 42) return 0;
    uint32_t ifd = read_u32(exif + 4, little);
    if ((size_t)ifd > size || size - ifd < 2) return 0;
    uint32_t entries = read_u16(exif + ifd, little);
    const uint8_t *entry = exif + ifd + 2;
    size_t available = (size - ifd - 2) / 12;
    if (entries > available) entries = (uint32_t)available;
    for (uint32_t i = 0; i < entries; i++, entry += 12) {
        if (read_u16(entry, little) != 0x0112) continue;
        uint32_t type = read_u16(entry + 2, little);
        uint32_t value;
        if (type == 3) value = read_u16(entry + 8, little);        // SHORT
        else if (type == 4) value = read_u32(entry + 8, little);   // LONG (seen in the wild)
        else return 0;
        return (value >= 1 && value <= 8) ? (int)value : 0;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// JPEG

typedef struct {
    struct jpeg_error_mgr pub;  // must be first: libjpeg hands back a pointer to it
    jmp_buf jump;
    int status;
    int warnings;
    char *message;
    size_t capacity;
} jpeg_guard;

static void jpeg_guard_error_exit(j_common_ptr cinfo) {
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    if (guard->status == DCN_CODEC_OK) guard->status = DCN_CODEC_CORRUPT;
    set_message(guard->message, guard->capacity, text);
    longjmp(guard->jump, 1);
}

// Warnings (level -1) are recoverable corruption. Running out of data is not: the source manager
// then pads with a fake EOI and libjpeg would return a gray-filled image, so it becomes an error.
static void jpeg_guard_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) {
        guard->status = DCN_CODEC_TRUNCATED;
        set_message(guard->message, guard->capacity, "truncated JPEG (data ends before the image does)");
        longjmp(guard->jump, 1);
    }
    if (guard->warnings == 0 && guard->message != NULL && guard->capacity > 0) {
        char text[JMSG_LENGTH_MAX];  // the first warning is kept for the caller
        (*cinfo->err->format_message)(cinfo, text);
        set_message(guard->message, guard->capacity, text);
    }
    guard->warnings++;
    cinfo->err->num_warnings++;
}

static void jpeg_guard_output_message(j_common_ptr cinfo) { (void)cinfo; }

// Pillow's MULDIV255: a * b / 255 rounded, in integers.
static inline int muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static int decode_jpeg(const uint8_t *data, size_t size, dcn_decoded_image *out,
                       char *message, size_t message_capacity, int header_only) {
    if (out == NULL || data == NULL) return DCN_CODEC_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    if (size < 4) {
        set_message(message, message_capacity, "truncated JPEG (fewer than 4 bytes)");
        return DCN_CODEC_TRUNCATED;
    }
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile row = NULL;

    cinfo.err = jpeg_std_error(&guard.pub);
    guard.pub.error_exit = jpeg_guard_error_exit;
    guard.pub.emit_message = jpeg_guard_emit_message;
    guard.pub.output_message = jpeg_guard_output_message;
    guard.status = DCN_CODEC_OK;
    guard.warnings = 0;
    guard.message = message;
    guard.capacity = message_capacity;

    if (setjmp(guard.jump)) {
        free(pixels);
        free(row);
        jpeg_destroy_decompress(&cinfo);
        return guard.status;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);

    // The first APP1 "Exif" segment wins, as in Pillow.
    int orientation = 0;
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && memcmp(m->data, "Exif\0\0", 6) == 0) {
            orientation = dcn_exif_orientation(m->data, m->data_length);
            break;
        }
    }

    const int four = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    if (cinfo.num_components != 1 && cinfo.num_components != 3 && cinfo.num_components != 4) {
        set_message(message, message_capacity, "unsupported JPEG component count");
        guard.status = DCN_CODEC_UNSUPPORTED;
        longjmp(guard.jump, 1);
    }
    cinfo.out_color_space = four ? JCS_CMYK : JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;  // Pillow's default: exact integer IDCT
    int status = check_size(cinfo.image_width, cinfo.image_height, message, message_capacity);
    if (status != DCN_CODEC_OK) {
        guard.status = status;
        longjmp(guard.jump, 1);
    }
    if (header_only) {
        out->width = (int32_t)cinfo.image_width;
        out->height = (int32_t)cinfo.image_height;
        out->orientation = orientation;
        jpeg_destroy_decompress(&cinfo);
        return DCN_CODEC_OK;
    }
    jpeg_start_decompress(&cinfo);
    const size_t width = cinfo.output_width, height = cinfo.output_height;
    pixels = (uint8_t *)malloc(width * height * 3);
    if (four) row = (uint8_t *)malloc(width * 4);
    if (pixels == NULL || (four && row == NULL)) {
        set_message(message, message_capacity, "out of memory");
        guard.status = DCN_CODEC_NO_MEMORY;
        longjmp(guard.jump, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        const size_t y = cinfo.output_scanline;
        uint8_t *dst = pixels + y * width * 3;
        JSAMPROW target = four ? row : dst;
        if (jpeg_read_scanlines(&cinfo, &target, 1) != 1) continue;
        if (four) {
            // Stored values are Adobe-inverted CMYK (Pillow reads every CMYK JPEG as "CMYK;I"):
            // with C = 255 - c and K = 255 - k, Pillow's cmyk2rgb gives
            // R = (255 - K) - C * (255 - K) / 255 = k - (255 - c) * k / 255.
            for (size_t x = 0; x < width; x++) {
                const uint8_t *s = row + 4 * x;
                const int k = s[3];
                for (int c = 0; c < 3; c++) {
                    int v = k - muldiv255(255 - s[c], k);
                    dst[3 * x + c] = (uint8_t)(v < 0 ? 0 : (v > 255 ? 255 : v));
                }
            }
        }
    }
    // Every row is decoded (a file that lacks only its EOI already failed above, as in Pillow,
    // because the Huffman decoder reads ahead); trailing data is not examined.
    jpeg_abort_decompress(&cinfo);
    out->warnings = guard.warnings;
    jpeg_destroy_decompress(&cinfo);
    free(row);
    out->pixels = pixels;
    out->width = (int32_t)width;
    out->height = (int32_t)height;
    out->orientation = orientation;
    return DCN_CODEC_OK;
}

int dcn_decode_jpeg(const uint8_t *data, size_t size, dcn_decoded_image *out,
                    char *message, size_t message_capacity) {
    return decode_jpeg(data, size, out, message, message_capacity, 0);
}

int dcn_probe_jpeg(const uint8_t *data, size_t size, dcn_decoded_image *out,
                   char *message, size_t message_capacity) {
    return decode_jpeg(data, size, out, message, message_capacity, 1);
}

int dcn_encode_jpeg(const uint8_t *rgb, int32_t width, int32_t height, int32_t quality,
                    uint8_t **out, size_t *out_size, char *message, size_t message_capacity) {
    if (rgb == NULL || out == NULL || out_size == NULL || width <= 0 || height <= 0 ||
        width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION) {
        set_message(message, message_capacity, "invalid image size for JPEG");
        return DCN_CODEC_BAD_ARGUMENT;
    }
    *out = NULL;
    *out_size = 0;
    struct jpeg_compress_struct cinfo;
    jpeg_guard guard;
    unsigned char *volatile buffer = NULL;
    unsigned long buffer_size = 0;

    cinfo.err = jpeg_std_error(&guard.pub);
    guard.pub.error_exit = jpeg_guard_error_exit;
    guard.pub.emit_message = jpeg_guard_emit_message;
    guard.pub.output_message = jpeg_guard_output_message;
    guard.status = DCN_CODEC_OK;
    guard.warnings = 0;
    guard.message = message;
    guard.capacity = message_capacity;

    if (setjmp(guard.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buffer);
        return guard.status;
    }
    jpeg_create_compress(&cinfo);
    unsigned char *mem = NULL;
    jpeg_mem_dest(&cinfo, &mem, &buffer_size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = 3;
    cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality < 1 ? 1 : (quality > 100 ? 100 : quality), TRUE);
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW r = (JSAMPROW)(rgb + (size_t)cinfo.next_scanline * (size_t)width * 3);
        jpeg_write_scanlines(&cinfo, &r, 1);
        buffer = mem;  // the destination may have reallocated
    }
    jpeg_finish_compress(&cinfo);
    buffer = mem;
    jpeg_destroy_compress(&cinfo);
    *out = buffer;
    *out_size = buffer_size;
    return DCN_CODEC_OK;
}

// ---------------------------------------------------------------------------------------------
// PNG

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t position;
    int truncated;
    char *message;
    size_t capacity;
} png_source;

static void png_read_memory(png_structp png, png_bytep target, size_t length) {
    png_source *source = (png_source *)png_get_io_ptr(png);
    if (source->size - source->position < length) {
        source->truncated = 1;
        png_error(png, "truncated PNG (data ends before the image does)");
    }
    memcpy(target, source->data + source->position, length);
    source->position += length;
}

static void png_guard_error(png_structp png, png_const_charp text) {
    png_source *source = (png_source *)png_get_error_ptr(png);
    if (source != NULL) set_message(source->message, source->capacity, text);
    png_longjmp(png, 1);
}

static void png_guard_warning(png_structp png, png_const_charp text) {
    (void)png;
    (void)text;
}

// The signature check and the read struct (with the returning error handler) of both PNG
// decoders; `source` must outlive `*png`.
static int png_read_begin(const uint8_t *data, size_t size, png_source *source, png_structp *png,
                          char *message, size_t message_capacity) {
    if (size < 8 || png_sig_cmp(data, 0, 8) != 0) {
        set_message(message, message_capacity, size < 8 ? "truncated PNG (no signature)" : "not a PNG signature");
        return size < 8 ? DCN_CODEC_TRUNCATED : DCN_CODEC_CORRUPT;
    }
    *source = (png_source){data, size, 0, 0, message, message_capacity};
    *png = png_create_read_struct(PNG_LIBPNG_VER_STRING, source, png_guard_error, png_guard_warning);
    if (*png == NULL) {
        set_message(message, message_capacity, "out of memory");
        return DCN_CODEC_NO_MEMORY;
    }
    return DCN_CODEC_OK;
}

static int decode_png(const uint8_t *data, size_t size, dcn_decoded_image *out,
                      char *message, size_t message_capacity, int header_only) {
    if (out == NULL || data == NULL) return DCN_CODEC_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    png_source source;
    png_structp png = NULL;
    int begun = png_read_begin(data, size, &source, &png, message, message_capacity);
    if (begun != DCN_CODEC_OK) return begun;
    png_infop info = png_create_info_struct(png);
    png_infop end_info = png_create_info_struct(png);
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile int status = DCN_CODEC_CORRUPT;
    volatile int orientation = 0;
    volatile int32_t width = 0, height = 0;

    if (info == NULL || end_info == NULL) {
        png_destroy_read_struct(&png, info ? &info : NULL, end_info ? &end_info : NULL);
        set_message(message, message_capacity, "out of memory");
        return DCN_CODEC_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, &end_info);
        return source.truncated ? DCN_CODEC_TRUNCATED : status;
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    int size_status = check_size(w, h, message, message_capacity);
    if (size_status != DCN_CODEC_OK) {
        status = size_status;
        png_longjmp(png, 1);
    }
    if (header_only) {
#ifdef PNG_eXIf_SUPPORTED
        png_bytep early = NULL;
        png_uint_32 early_size = 0;
        if (png_get_eXIf_1(png, info, &early_size, &early) != 0 && early != NULL)
            out->orientation = dcn_exif_orientation(early, early_size);
#endif
        out->width = (int32_t)w;
        out->height = (int32_t)h;
        png_destroy_read_struct(&png, &info, &end_info);
        return DCN_CODEC_OK;
    }
    // The conversions of Pillow's convert("RGB"): palette -> RGB, gray -> RGB, alpha dropped
    // (no compositing), 16 -> 8 bits by keeping the high byte ("RGB;16B" rawmode).
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (bit_depth == 16) png_set_strip_16(png);
    if ((color_type & PNG_COLOR_MASK_ALPHA) != 0 || png_get_valid(png, info, PNG_INFO_tRNS) != 0)
        png_set_strip_alpha(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != (size_t)w * 3) {
        set_message(message, message_capacity, "unsupported PNG pixel layout");
        status = DCN_CODEC_UNSUPPORTED;
        png_longjmp(png, 1);
    }
    pixels = (uint8_t *)malloc((size_t)w * h * 3);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * h);
    if (pixels == NULL || rows == NULL) {
        set_message(message, message_capacity, "out of memory");
        status = DCN_CODEC_NO_MEMORY;
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * w * 3;
    png_read_image(png, rows);
    width = (int32_t)w;
    height = (int32_t)h;

#ifdef PNG_eXIf_SUPPORTED
    png_bytep exif = NULL;
    png_uint_32 exif_size = 0;
    if (png_get_eXIf_1(png, info, &exif_size, &exif) != 0 && exif != NULL)
        orientation = dcn_exif_orientation(exif, exif_size);
#endif
    // The pixels are complete. Chunks after the image data (IEND, maybe eXIf) are read leniently:
    // a file cut after its last IDAT still decodes, as in Pillow.
    if (setjmp(png_jmpbuf(png)) == 0) {
        png_read_end(png, end_info);
#ifdef PNG_eXIf_SUPPORTED
        if (orientation == 0) {
            png_bytep late = NULL;
            png_uint_32 late_size = 0;
            if (png_get_eXIf_1(png, end_info, &late_size, &late) != 0 && late != NULL)
                orientation = dcn_exif_orientation(late, late_size);
        }
#endif
    }
    free(rows);
    png_destroy_read_struct(&png, &info, &end_info);
    out->pixels = pixels;
    out->width = width;
    out->height = height;
    out->orientation = orientation;
    out->warnings = 0;
    return DCN_CODEC_OK;
}

int dcn_decode_png(const uint8_t *data, size_t size, dcn_decoded_image *out,
                   char *message, size_t message_capacity) {
    return decode_png(data, size, out, message, message_capacity, 0);
}

int dcn_probe_png(const uint8_t *data, size_t size, dcn_decoded_image *out,
                  char *message, size_t message_capacity) {
    return decode_png(data, size, out, message, message_capacity, 1);
}

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
    int failed;
} png_sink;

static void png_write_memory(png_structp png, png_bytep bytes, size_t length) {
    png_sink *sink = (png_sink *)png_get_io_ptr(png);
    if (sink->size + length > sink->capacity) {
        size_t capacity = sink->capacity ? sink->capacity : 4096;
        while (capacity < sink->size + length) capacity *= 2;
        uint8_t *grown = (uint8_t *)realloc(sink->data, capacity);
        if (grown == NULL) {
            sink->failed = 1;
            png_error(png, "out of memory");
        }
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, bytes, length);
    sink->size += length;
}

static void png_flush_memory(png_structp png) { (void)png; }

// Writes `height` rows of `row_bytes` bytes as a PNG with the given IHDR colour type (8-bit) and,
// for a palette PNG, its PLTE entries.
static int encode_png_rows(const uint8_t *pixels, int32_t width, int32_t height, size_t row_bytes, int color_type,
                           const uint8_t *palette, int32_t palette_entries,
                           uint8_t **out, size_t *out_size, char *message, size_t message_capacity) {
    *out = NULL;
    *out_size = 0;
    png_source errors = {NULL, 0, 0, 0, message, message_capacity};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &errors, png_guard_error, png_guard_warning);
    if (png == NULL) return DCN_CODEC_NO_MEMORY;
    png_infop info = png_create_info_struct(png);
    png_sink sink = {NULL, 0, 0, 0};
    png_bytep *volatile rows = NULL;
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return DCN_CODEC_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(sink.data);
        png_destroy_write_struct(&png, &info);
        return sink.failed ? DCN_CODEC_NO_MEMORY : DCN_CODEC_CORRUPT;
    }
    png_set_write_fn(png, &sink, png_write_memory, png_flush_memory);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color_type,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color entries[256];
        for (int32_t i = 0; i < palette_entries; i++) {
            entries[i].red = palette[3 * i];
            entries[i].green = palette[3 * i + 1];
            entries[i].blue = palette[3 * i + 2];
        }
        png_set_PLTE(png, info, entries, palette_entries);
    }
    png_set_compression_level(png, 6);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)height);
    if (rows == NULL) {
        sink.failed = 1;
        png_error(png, "out of memory");
    }
    for (int32_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * row_bytes);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    free(rows);
    png_destroy_write_struct(&png, &info);
    *out = sink.data;
    *out_size = sink.size;
    return DCN_CODEC_OK;
}

int dcn_encode_png(const uint8_t *rgb, int32_t width, int32_t height,
                   uint8_t **out, size_t *out_size, char *message, size_t message_capacity) {
    if (rgb == NULL || out == NULL || out_size == NULL || width <= 0 || height <= 0) {
        set_message(message, message_capacity, "invalid image size for PNG");
        return DCN_CODEC_BAD_ARGUMENT;
    }
    return encode_png_rows(rgb, width, height, (size_t)width * 3, PNG_COLOR_TYPE_RGB, NULL, 0,
                           out, out_size, message, message_capacity);
}

int dcn_encode_png_samples(const uint8_t *samples, int32_t width, int32_t height,
                           const uint8_t *palette, int32_t palette_entries,
                           uint8_t **out, size_t *out_size, char *message, size_t message_capacity) {
    if (samples == NULL || out == NULL || out_size == NULL || width <= 0 || height <= 0) {
        set_message(message, message_capacity, "invalid image size for PNG");
        return DCN_CODEC_BAD_ARGUMENT;
    }
    if (palette != NULL && (palette_entries < 1 || palette_entries > 256)) {
        set_message(message, message_capacity, "a PNG palette has 1 to 256 entries");
        return DCN_CODEC_BAD_ARGUMENT;
    }
    return encode_png_rows(samples, width, height, (size_t)width,
                           palette != NULL ? PNG_COLOR_TYPE_PALETTE : PNG_COLOR_TYPE_GRAY, palette, palette_entries,
                           out, out_size, message, message_capacity);
}

// ---------------------------------------------------------------------------------------------
// Label maps: the stored samples of a palette or grayscale PNG, without conversion.

static const char *png_color_type_name(int color_type) {
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return "grayscale";
    case PNG_COLOR_TYPE_PALETTE: return "palette";
    case PNG_COLOR_TYPE_RGB: return "RGB";
    case PNG_COLOR_TYPE_RGB_ALPHA: return "RGBA";
    case PNG_COLOR_TYPE_GRAY_ALPHA: return "grayscale+alpha";
    default: return "unknown colour type";
    }
}

int dcn_decode_png_samples(const uint8_t *data, size_t size, dcn_decoded_labels *out,
                           char *message, size_t message_capacity) {
    if (out == NULL || data == NULL) return DCN_CODEC_BAD_ARGUMENT;
    memset(out, 0, sizeof *out);
    png_source source;
    png_structp png = NULL;
    int begun = png_read_begin(data, size, &source, &png, message, message_capacity);
    if (begun != DCN_CODEC_OK) return begun;
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile samples = NULL;
    png_bytep *volatile rows = NULL;
    volatile int status = DCN_CODEC_CORRUPT;
    if (info == NULL) {
        png_destroy_read_struct(&png, NULL, NULL);
        set_message(message, message_capacity, "out of memory");
        return DCN_CODEC_NO_MEMORY;
    }
    if (setjmp(png_jmpbuf(png))) {
        free(samples);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return source.truncated ? DCN_CODEC_TRUNCATED : status;
    }
    png_set_read_fn(png, &source, png_read_memory);
    png_read_info(png, info);
    png_uint_32 w = 0, h = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(png, info, &w, &h, &bit_depth, &color_type, &interlace, NULL, NULL);
    int size_status = check_size(w, h, message, message_capacity);
    if (size_status != DCN_CODEC_OK) {
        status = size_status;
        png_longjmp(png, 1);
    }
    if ((color_type != PNG_COLOR_TYPE_PALETTE && color_type != PNG_COLOR_TYPE_GRAY) || bit_depth > 8) {
        char text[200];
        snprintf(text, sizeof text, "%s with %d-bit samples; a label map is a palette or grayscale PNG of at most 8 bits "
                 "(one class index per pixel)", png_color_type_name(color_type), bit_depth);
        set_message(message, message_capacity, text);
        status = DCN_CODEC_UNSUPPORTED;
        png_longjmp(png, 1);
    }
    // Unpack 1/2/4-bit samples to one byte each, keeping their values (no scaling, no palette).
    if (bit_depth < 8) png_set_packing(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 1 || png_get_rowbytes(png, info) != (size_t)w) {
        set_message(message, message_capacity, "unsupported PNG sample layout");
        status = DCN_CODEC_UNSUPPORTED;
        png_longjmp(png, 1);
    }
    samples = (uint8_t *)malloc((size_t)w * h);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * h);
    if (samples == NULL || rows == NULL) {
        set_message(message, message_capacity, "out of memory");
        status = DCN_CODEC_NO_MEMORY;
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = samples + (size_t)y * w;
    png_read_image(png, rows);
    // The samples are complete; what follows the image data is not examined (as in decode_png).
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    out->samples = samples;
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->is_palette = color_type == PNG_COLOR_TYPE_PALETTE;
    return DCN_CODEC_OK;
}
