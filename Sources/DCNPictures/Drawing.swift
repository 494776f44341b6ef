// Drawing on RGB images, for pictures a person looks at (detections next to the ground truth):
// filled and outlined rectangles, masks blended in a colour, and text in a built-in 5x7 bitmap
// font scaled by whole pixels, so labels stay sharp and readable without a font library.
import DCNData
import Foundation

/// An 8-bit RGB colour.
public struct RGBColor: Sendable, Equatable {
    public var r: UInt8, g: UInt8, b: UInt8
    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }

    public static let white = RGBColor(255, 255, 255)
    public static let black = RGBColor(0, 0, 0)

    /// Relative luminance (0...255): dark colours get white text, light ones black.
    public var luminance: Double { 0.299 * Double(r) + 0.587 * Double(g) + 0.114 * Double(b) }
    public var readableTextColor: RGBColor { luminance > 150 ? .black : .white }

    /// A distinct colour per class label (1, 2, ...): a fixed palette of 20 well-separated hues.
    public static func forLabel(_ label: Int) -> RGBColor {
        let palette: [(UInt8, UInt8, UInt8)] = [
            (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
            (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
            (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128), (255, 225, 25),
        ]
        let p = palette[((label - 1) % palette.count + palette.count) % palette.count]
        return RGBColor(p.0, p.1, p.2)
    }
}

extension RGBImage {
    /// A `width` x `height` image of one colour.
    public static func filled(width: Int, height: Int, color: RGBColor) throws -> RGBImage {
        var pixels = [UInt8](repeating: 0, count: max(0, width * height * 3))
        for i in stride(from: 0, to: pixels.count, by: 3) { pixels[i] = color.r; pixels[i + 1] = color.g; pixels[i + 2] = color.b }
        return try RGBImage(width: width, height: height, pixels: pixels)
    }

    /// Blends `color` into pixel (x, y) with weight `alpha` (1 = replace); outside the image does nothing.
    @inline(__always)
    public mutating func blend(x: Int, y: Int, _ color: RGBColor, alpha: Double = 1) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = 3 * (y * width + x)
        if alpha >= 1 {
            pixels[i] = color.r; pixels[i + 1] = color.g; pixels[i + 2] = color.b
            return
        }
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) * (1 - alpha) + Double(b) * alpha).rounded()) }
        pixels[i] = mix(pixels[i], color.r); pixels[i + 1] = mix(pixels[i + 1], color.g); pixels[i + 2] = mix(pixels[i + 2], color.b)
    }

    /// Fills the pixels x0..<x1, y0..<y1 (clipped to the image).
    public mutating func fillRect(x0: Int, y0: Int, x1: Int, y1: Int, _ color: RGBColor, alpha: Double = 1) {
        for y in max(0, y0)..<max(max(0, y0), min(height, y1)) {
            for x in max(0, x0)..<max(max(0, x0), min(width, x1)) { blend(x: x, y: y, color, alpha: alpha) }
        }
    }

    /// The outline of the box from (x0, y0) to (x1, y1) (pixel coordinates, rounded), `thickness`
    /// pixels wide inside the box.
    public mutating func strokeRect(x0: Double, y0: Double, x1: Double, y1: Double, _ color: RGBColor, thickness: Int = 2) {
        let l = Int(x0.rounded()), t = Int(y0.rounded()), r = Int(x1.rounded()), b = Int(y1.rounded())
        let k = max(1, min(thickness, (r - l + 1) / 2, (b - t + 1) / 2))
        fillRect(x0: l, y0: t, x1: r, y1: t + k, color)
        fillRect(x0: l, y0: b - k, x1: r, y1: b, color)
        fillRect(x0: l, y0: t, x1: l + k, y1: b, color)
        fillRect(x0: r - k, y0: t, x1: r, y1: b, color)
    }

    /// Blends `color` into every pixel where `inside(x, y)` holds.
    public mutating func blendMask(_ color: RGBColor, alpha: Double, inside: (Int, Int) -> Bool) {
        for y in 0..<height { for x in 0..<width where inside(x, y) { blend(x: x, y: y, color, alpha: alpha) } }
    }

    /// Writes `text` with its top-left corner at (x, y), each font pixel `scale` x `scale` pixels.
    public mutating func drawText(_ text: String, x: Int, y: Int, scale: Int, _ color: RGBColor) {
        var left = x
        for character in text {
            let rows = BitmapFont.rows(character)
            for (r, bits) in rows.enumerated() {
                for c in 0..<BitmapFont.glyphWidth where bits & (1 << (BitmapFont.glyphWidth - 1 - c)) != 0 {
                    fillRect(x0: left + c * scale, y0: y + r * scale, x1: left + (c + 1) * scale, y1: y + (r + 1) * scale, color)
                }
            }
            left += BitmapFont.advance * scale
        }
    }

    /// The rectangle (x0, y0, x1, y1) a label drawn at (x, y) covers, moved inside the image.
    public func labelRect(_ text: String, x: Int, y: Int, scale: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int) {
        let (w, h) = BitmapFont.size(of: text, scale: scale)
        let pad = scale
        let left = max(0, min(x, width - w - 2 * pad)), top = max(0, min(y, height - h - 2 * pad))
        return (left, top, left + w + 2 * pad, top + h + 2 * pad)
    }

    /// A label: `text` on a filled rectangle of `background` whose top-left corner is (x, y),
    /// moved inside the image when it would leave it.
    public mutating func drawLabel(_ text: String, x: Int, y: Int, scale: Int, background: RGBColor) {
        let r = labelRect(text, x: x, y: y, scale: scale)
        fillRect(x0: r.x0, y0: r.y0, x1: r.x1, y1: r.y1, background)
        drawText(text, x: r.x0 + scale, y: r.y0 + scale, scale: scale, background.readableTextColor)
    }

    /// Copies `image` into this one with its top-left corner at (x, y) (clipped).
    public mutating func paste(_ image: RGBImage, x: Int, y: Int) {
        for row in 0..<image.height where y + row >= 0 && y + row < height {
            for col in 0..<image.width where x + col >= 0 && x + col < width {
                let s = 3 * (row * image.width + col), d = 3 * ((y + row) * width + x + col)
                pixels[d] = image.pixels[s]; pixels[d + 1] = image.pixels[s + 1]; pixels[d + 2] = image.pixels[s + 2]
            }
        }
    }
}

/// A 5x7 bitmap font for printable ASCII (drawn for this project); other characters show as a box.
public enum BitmapFont {
    public static let glyphWidth = 5, glyphHeight = 7
    /// Horizontal distance between characters, in font pixels (one blank column).
    public static let advance = 6

    /// Width and height in pixels of `text` drawn at `scale`.
    public static func size(of text: String, scale: Int) -> (width: Int, height: Int) {
        (max(0, text.count * advance - 1) * scale, glyphHeight * scale)
    }

    /// The glyph's rows, top to bottom, as bit masks (bit 4 = leftmost column); nil for a character
    /// the font does not have (drawn as a box).
    public static func glyph(_ character: Character) -> [UInt8]? { table[character] }

    static func rows(_ character: Character) -> [UInt8] { table[character] ?? table["\u{FFFD}"]! }

    /// Each glyph as 7 rows of 5 columns ('#' = ink).
    private static let art: [Character: String] = [
        " ": "..... ..... ..... ..... ..... ..... .....", "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
        "\"": ".#.#. .#.#. ..... ..... ..... ..... .....", "#": ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#.",
        "$": "..#.. .#### #.#.. .###. ..#.# ####. ..#..", "%": "##... ##..# ...#. ..#.. .#... #..## ...##",
        "&": ".##.. #..#. #.#.. .#... #.#.# #..#. .##.#", "'": "..#.. ..#.. .#... ..... ..... ..... .....",
        "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.", ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
        "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....", "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
        ",": "..... ..... ..... ..... .##.. ..#.. .#...", "-": "..... ..... ..... ##### ..... ..... .....",
        ".": "..... ..... ..... ..... ..... .##.. .##..", "/": "..... ....# ...#. ..#.. .#... #.... .....",
        "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
        "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
        "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
        "6": "..##. .#... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
        "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ...#. .##..",
        ":": "..... .##.. .##.. ..... .##.. .##.. .....", ";": "..... .##.. .##.. ..... .##.. ..#.. .#...",
        "<": "...#. ..#.. .#... #.... .#... ..#.. ...#.", "=": "..... ..... ##### ..... ##### ..... .....",
        ">": ".#... ..#.. ...#. ....# ...#. ..#.. .#...", "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
        "@": ".###. #...# ....# .##.# #.#.# #.#.# .###.", "A": ".###. #...# #...# ##### #...# #...# #...#",
        "B": "####. #...# #...# ####. #...# #...# ####.", "C": ".###. #...# #.... #.... #.... #...# .###.",
        "D": "###.. #..#. #...# #...# #...# #..#. ###..", "E": "##### #.... #.... ####. #.... #.... #####",
        "F": "##### #.... #.... ####. #.... #.... #....", "G": ".###. #...# #.... #.### #...# #...# .####",
        "H": "#...# #...# #...# ##### #...# #...# #...#", "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
        "J": "..### ...#. ...#. ...#. ...#. #..#. .##..", "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
        "L": "#.... #.... #.... #.... #.... #.... #####", "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
        "N": "#...# #...# ##..# #.#.# #..## #...# #...#", "O": ".###. #...# #...# #...# #...# #...# .###.",
        "P": "####. #...# #...# ####. #.... #.... #....", "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
        "R": "####. #...# #...# ####. #.#.. #..#. #...#", "S": ".#### #.... #.... .###. ....# ....# ####.",
        "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..", "U": "#...# #...# #...# #...# #...# #...# .###.",
        "V": "#...# #...# #...# #...# #...# .#.#. ..#..", "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
        "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#", "Y": "#...# #...# #...# .#.#. ..#.. ..#.. ..#..",
        "Z": "##### ....# ...#. ..#.. .#... #.... #####", "[": ".###. .#... .#... .#... .#... .#... .###.",
        "\\": "..... #.... .#... ..#.. ...#. ....# .....", "]": ".###. ...#. ...#. ...#. ...#. ...#. .###.",
        "^": "..#.. .#.#. #...# ..... ..... ..... .....", "_": "..... ..... ..... ..... ..... ..... #####",
        "`": ".#... ..#.. ...#. ..... ..... ..... .....", "a": "..... ..... .###. ....# .#### #...# .####",
        "b": "#.... #.... #.##. ##..# #...# #...# ####.", "c": "..... ..... .###. #.... #.... #...# .###.",
        "d": "....# ....# .##.# #..## #...# #...# .####", "e": "..... ..... .###. #...# ##### #.... .###.",
        "f": "..##. .#..# .#... ###.. .#... .#... .#...", "g": "..... ..... .#### #...# .#### ....# .###.",
        "h": "#.... #.... #.##. ##..# #...# #...# #...#", "i": "..#.. ..... .##.. ..#.. ..#.. ..#.. .###.",
        "j": "...#. ..... ..##. ...#. ...#. #..#. .##..", "k": "#.... #.... #..#. #.#.. ##... #.#.. #..#.",
        "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "m": "..... ..... ##.#. #.#.# #.#.# #...# #...#",
        "n": "..... ..... #.##. ##..# #...# #...# #...#", "o": "..... ..... .###. #...# #...# #...# .###.",
        "p": "..... ..... ####. #...# ####. #.... #....", "q": "..... ..... .##.# #..## .#### ....# ....#",
        "r": "..... ..... #.##. ##..# #.... #.... #....", "s": "..... ..... .###. #.... .###. ....# ####.",
        "t": ".#... .#... ###.. .#... .#... .#..# ..##.", "u": "..... ..... #...# #...# #...# #..## .##.#",
        "v": "..... ..... #...# #...# #...# .#.#. ..#..", "w": "..... ..... #...# #...# #.#.# #.#.# .#.#.",
        "x": "..... ..... #...# .#.#. ..#.. .#.#. #...#", "y": "..... ..... #...# #...# .#### ....# .###.",
        "z": "..... ..... ##### ...#. ..#.. .#... #####", "{": "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#.",
        "|": "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#..", "}": ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#...",
        "~": "..... ..... .#... #.#.# ...#. ..... .....", "\u{FFFD}": "##### #...# #...# #...# #...# #...# #####",
    ]

    private static let table: [Character: [UInt8]] = art.mapValues { glyph in
        glyph.split(separator: " ").map { row in row.reduce(UInt8(0)) { $0 << 1 | ($1 == "#" ? 1 : 0) } }
    }
}
