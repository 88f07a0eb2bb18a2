/** What a method asks `ConvServe` to send, and the helpers its answers share. */
function base64ToBytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1)
        bytes[i] = binary.charCodeAt(i);
    return bytes;
}
/**
 * A format=json channel (of `convolve` or of a model's `features`) with `png()` and
 * `objectURL()` added (not enumerable: JSON stays JSON).
 */
export function withPng(channel) {
    let blob;
    const png = () => {
        if (blob === undefined) {
            blob = channel.png_base64 ? new Blob([base64ToBytes(channel.png_base64)], { type: 'image/png' }) : null;
        }
        return blob;
    };
    Object.defineProperties(channel, {
        png: { value: png },
        objectURL: {
            value: () => {
                const file = png();
                return file ? URL.createObjectURL(file) : null;
            },
        },
    });
    return channel;
}
