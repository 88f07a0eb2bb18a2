// A small program against the public types: `npm run typecheck` compiles it, so an answer
// field that the API renames or retypes breaks the build here before it breaks a frontend.

import {
  APIStatusError, ConvServe, UnprocessableEntityError, type ConvolveJson, type NDArray,
} from 'convserve-client';

export async function demo(photo: Blob, signal: AbortSignal): Promise<string[]> {
  const cs = new ConvServe({ baseURL: 'http://localhost:8000', apiKey: null, timeoutMs: 30_000, maxRetries: 1 });
  const lines: string[] = [];

  const maps: ConvolveJson = await cs.convolve({ image: photo, preset: 'sobel', padding_mode: 'reflect', signal });
  const [cOut, hOut, wOut] = maps.shape;
  lines.push(`${cOut} maps of ${hOut} x ${wOut} by ${maps.engine} on ${maps.device}, ${maps.cost.macs} MACs`);
  for (const channel of maps.channels) {
    const png: Blob | null = channel.png();
    lines.push(`channel ${channel.index} (${channel.name ?? '-'}): min ${channel.min}, max ${channel.max}, ${png?.size ?? 0} bytes`);
  }

  const array = await cs.convolve({
    input: { array: Float32Array.of(0, 1, 2, 3), shape: [1, 2, 2] },
    kernel: { weight: Float32Array.of(1), shape: [1, 1, 1, 1] },
    format: 'array',
  });
  const first: number = array.data[0][0][0];
  const npy: NDArray = await cs.convolve({ image: photo, preset: 'box_blur', preset_params: { size: 5 }, format: 'npy' });
  const grid: Blob = await cs.convolve({ image: photo, preset: 'sobel', format: 'grid' });
  lines.push(`first ${first}, npy ${npy.shape.join('x')} (${npy.data.length}), grid ${grid.type}`);

  const why = await cs.explain({ image: photo, preset: 'sobel', at: [0, 10, 10], color_mode: 'gray' });
  lines.push(`output[0, 10, 10] = ${why.value} from ${why.terms.length} terms`);

  const stack = await cs.layers({ image: photo, layers: [{ type: 'conv2d', preset: 'sobel' }, { type: 'relu' }] });
  lines.push(`layers out ${stack.output_shape.join('x')}, ${stack.total_macs} MACs`);

  const model = await cs.sampleModel({ signal });
  const listed = await cs.models();
  const conv = (await cs.model(model.id)).layers.find((layer) => layer.op === 'Conv');
  lines.push(`model ${model.id} (${model.created_now ? 'new' : 'stored already'}), ${listed.length} stored, `
    + `${model.total_params} parameters, first Conv ${conv?.name ?? '-'}`);
  const features = await cs.features(model.id, { image: photo, layers: ['conv1', 0], preprocess: { resize: 'stretch' } });
  const firstMap: Blob | null = features.layers[0].channels[0].png();
  const raw: NDArray = await cs.features(model.id, { image: photo, layers: 'conv1', format: 'npy', preprocess: 'none' });
  const kernel = await cs.modelKernel(model.id, 'conv1');
  const sum = await cs.modelExplain(model.id, { image: photo, layer: 0, at: [0, 1, 1], preprocess: { resize: 'fit' } });
  lines.push(`${features.layers[0].name} ${features.layers[0].shape.join('x')} (${firstMap?.size ?? 0} bytes), `
    + `npy ${raw.shape.join('x')}, kernel stride ${kernel.stride.join('x')}, value ${sum.value} = ${sum.total}`);
  await cs.deleteModel(model.id);

  const [presets, resolved, engines, ready] = await Promise.all([
    cs.presets(), cs.preset('gaussian_blur', { channels: 1, params: { sigma: 2 } }), cs.engines(), cs.ready(),
  ]);
  lines.push(`${presets.length} presets; gaussian_blur is ${resolved.weight_shape.join('x')}`);
  lines.push(`default engine ${engines.default_engine}; ready: ${ready.ready ? ready.status : ready.detail}`);

  try {
    await cs.convolve({ input: { array: [[1, 2], [3, 4]] }, kernel: [[[[1, 2, 3]]]], stride: [2, 0] });
  } catch (error) {
    if (error instanceof UnprocessableEntityError) {
      lines.push(`422 on ${error.errors.map((e) => e.field).join(', ')}: ${error.problem.detail}`);
    } else if (error instanceof APIStatusError) {
      lines.push(`${error.status} ${error.title}`);
    } else {
      throw error;
    }
  }
  return lines;
}
