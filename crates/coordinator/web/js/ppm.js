// Binary PPM (P6), as the render guest writes its tiles: "P6", width, height and maxval
// separated by whitespace (with `#` comments to the end of a line allowed between them), one
// whitespace character, then the RGB samples, one byte each when maxval < 256, else two (big
// endian). Returns RGBA bytes ready for ImageData.

const MAX_PIXELS = 1 << 24;

function isSpace(b) {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
}

export function parsePPM(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  if (bytes.length < 2 || bytes[0] !== 0x50 || bytes[1] !== 0x36) throw new Error('not a binary PPM (P6)');
  let pos = 2;
  const fields = [];
  while (fields.length < 3) {
    // whitespace and comments
    let skipped = false;
    while (pos < bytes.length) {
      if (isSpace(bytes[pos])) {
        pos += 1;
        skipped = true;
      } else if (bytes[pos] === 0x23) {
        while (pos < bytes.length && bytes[pos] !== 0x0a && bytes[pos] !== 0x0d) pos += 1;
        skipped = true;
      } else {
        break;
      }
    }
    if (!skipped) throw new Error('PPM header fields must be separated by whitespace');
    let value = 0;
    let digits = 0;
    while (pos < bytes.length && bytes[pos] >= 0x30 && bytes[pos] <= 0x39) {
      value = value * 10 + (bytes[pos] - 0x30);
      digits += 1;
      pos += 1;
      if (digits > 9) throw new Error('PPM header number too long');
    }
    if (digits === 0) throw new Error('PPM header is truncated or not a number');
    fields.push(value);
  }
  if (pos >= bytes.length || !isSpace(bytes[pos])) throw new Error('PPM header must end with one whitespace');
  pos += 1;
  const [width, height, maxval] = fields;
  if (width < 1 || height < 1 || width * height > MAX_PIXELS) throw new Error(`PPM size ${width}x${height} is out of range`);
  if (maxval < 1 || maxval > 65535) throw new Error(`PPM maxval ${maxval} is out of range`);
  const sampleBytes = maxval < 256 ? 1 : 2;
  const need = width * height * 3 * sampleBytes;
  if (bytes.length - pos < need) throw new Error(`PPM data is short: ${bytes.length - pos} of ${need} bytes`);
  const rgba = new Uint8ClampedArray(width * height * 4);
  const scale = 255 / maxval;
  for (let p = 0, o = 0; o < rgba.length; o += 4) {
    for (let c = 0; c < 3; c += 1) {
      let v;
      if (sampleBytes === 1) {
        v = bytes[pos + p];
        p += 1;
      } else {
        v = (bytes[pos + p] << 8) | bytes[pos + p + 1];
        p += 2;
      }
      rgba[o + c] = maxval === 255 ? v : Math.round(v * scale);
    }
    rgba[o + 3] = 255;
  }
  return { width, height, rgba };
}
