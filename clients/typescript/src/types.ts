/**
 * The request parameters and answers of each method, built from the generated OpenAPI types
 * (`openapi.ts`) so that they change when the API document does.
 */

import type { ArrayInput, ImageSource, KernelInput, NestedNumbers } from './inputs.js';
import type { NDArray } from './npy.js';
import type { components, operations } from './openapi.js';

type Schemas = components['schemas'];

export type ConvolveResponse = Schemas['ConvolveResponse'];
export type ChannelResult = Schemas['ChannelResult'];
export type ExplainResponse = Schemas['ExplainResponse'];
export type LayersResponse = Schemas['LayersResponse'];
export type EnginesResponse = Schemas['EnginesResponse'];
export type LimitsResponse = Schemas['LimitsResponse'];
export type LayerSpec = Schemas['LayersRequest']['layers'][number];
export type ModelInfo = Schemas['ModelInfo'];
export type ModelListItem = Schemas['ModelListItem'];
export type ModelLayer = Schemas['ModelLayer'];
export type ModelInput = Schemas['ModelInput'];
export type FeaturesResponse = Schemas['FeaturesResponse'];
export type FeatureLayer = Schemas['FeatureLayer'];
export type FeatureChannel = Schemas['FeatureChannel'];
export type ModelExplainResponse = Schemas['ModelExplainResponse'];
export type ModelKernelResponse = Schemas['ModelKernelResponse'];
export type PreprocessSpec = Schemas['PreprocessSpec'];
export type FeaturesFormat = NonNullable<Schemas['FeaturesRequest']['format']>;
export type ConvolveFormat = NonNullable<Schemas['ConvolveRequest']['format']>;
export type LayersFormat = NonNullable<Schemas['LayersRequest']['format']>;

/** What every call takes besides its own fields. */
export interface RequestOptions {
  /** Cancels the call, its retries and the waits between them. */
  signal?: AbortSignal;
  /** Overrides the client's `timeoutMs` for this call (per attempt). */
  timeoutMs?: number;
}

/** The input: an image file (`image`, sent as multipart) or numbers (`input`, sent as JSON). */
export interface InputParams {
  /** An image file's bytes (PNG, JPEG, WebP, BMP, TIFF, GIF or .npy), sent as multipart. */
  image?: ImageSource;
  /** The file name sent with `image` (a `File`'s own name otherwise). */
  filename?: string;
  /** Numbers used as sent, shape (C, H, W) or (H, W); or a base64 image. Sent as JSON. */
  input?: ArrayInput | { image_base64: string };
}

type ConvFields = Omit<Schemas['ConvolveRequest'], 'input' | 'kernel' | 'format' | 'dry_run'>;

/** The convolution options: exactly one of `kernel` and `preset`; the rest default on the server. */
export type ConvOptions = Partial<Omit<ConvFields, 'channel' | 'normalize'>> & {
  kernel?: KernelInput | NestedNumbers[];
};

export type ConvolveParams<F extends ConvolveFormat = ConvolveFormat> = InputParams & ConvOptions
  & RequestOptions & {
    format?: F;
    normalize?: ConvFields['normalize'];
    /** The output channel format=png returns (default 0). */
    channel?: number;
    /** Validate and return shapes and cost without computing (format json). */
    dry_run?: boolean;
  };

export type ExplainParams = InputParams & ConvOptions & RequestOptions & {
  /** The output element to explain: `{ channel, y, x }` or `[channel, y, x]`. */
  at: Schemas['ExplainAt'] | readonly [number, number, number];
};

export type LayersParams<F extends LayersFormat = LayersFormat> = InputParams & RequestOptions
  & Partial<Omit<Schemas['LayersRequest'], 'input' | 'layers' | 'format'>> & {
    layers: LayerSpec[];
    format?: F;
    /**
     * A trained network's weights (an .npz or .safetensors file, or a .npy of one tensor),
     * sent as the `kernel_file` part; conv2d entries name its tensors with `kernel_key` (or
     * take a .npy with `kernel_file: true`). Needs `image` (multipart).
     */
    kernelFile?: ImageSource;
  };

/** What a format=json channel gains: its picture as a PNG `Blob`. */
export interface PngMethods {
  /** This channel's PNG (null when the answer carried none). */
  png(): Blob | null;
  /** An object URL of `png()` for an `<img src>`; revoke it with `URL.revokeObjectURL`. */
  objectURL(): string | null;
}

/** A format=json channel: the generated fields, plus its picture as a PNG `Blob`. */
export type Channel = ChannelResult & PngMethods;

/** The format=json answer of `convolve`. */
export type ConvolveJson = Omit<ConvolveResponse, 'channels'> & { channels: Channel[] };

/** The format=array answer of `convolve`: the json fields plus the output as nested lists. */
export type ConvolveArray = Omit<ConvolveResponse, 'channels'> & {
  channels?: ChannelResult[];
  dtype: 'float32';
  data: number[][][];
};

/** What `convolve` resolves to for each format. */
export type ConvolveResult<F extends ConvolveFormat> =
  F extends 'json' ? ConvolveJson
    : F extends 'array' ? ConvolveArray
      : F extends 'npy' ? NDArray
        : Blob;

/** What `layers` resolves to for each format. */
export type LayersResult<F extends LayersFormat> =
  F extends 'json' ? LayersResponse : F extends 'npy' ? NDArray : Blob;

type JsonOf<Op extends keyof operations> = operations[Op]['responses'] extends
  { 200: { content: { 'application/json': infer T } } } ? T : never;

/**
 * One parameter of a preset.
 * (`GET /v1/presets` is an untyped object in the OpenAPI document; these fields are what the
 * server sends and what the Python client reads.)
 */
export interface PresetParameter {
  name: string;
  type: 'int' | 'float' | string;
  default: number | string | null;
  min?: number | null;
  max?: number | null;
  odd?: boolean;
  description?: string;
  choices?: Array<number | string> | null;
}

/** One entry of `GET /v1/presets`. */
export interface PresetInfo {
  name: string;
  description: string;
  /** How it spreads over input channels: depthwise, luminance or full. */
  rule: string;
  parameters: PresetParameter[];
  source: string;
  range_preserving: boolean;
  requires_channels?: number | null;
  [key: string]: unknown;
}

/** `GET /v1/presets/{name}`: the exact kernel the server would apply for `channels` inputs. */
export interface ResolvedPreset {
  name: string;
  weight: number[][][][];
  weight_shape: number[];
  bias: number[] | null;
  groups: number;
  rule: string;
  params: Record<string, number | string>;
  output_names: string[];
  range_preserving?: boolean;
  [key: string]: unknown;
}

export type HealthResponse = JsonOf<'healthz_healthz_get'>;

/** `GET /readyz`: not ready is an answer here (callers poll it), not an error. */
export type Readiness =
  | { ready: true; status: string; engine?: string; device?: string; [key: string]: unknown }
  | { ready: false; status: string; detail: string; retryAfter: number | null };

// --- models ------------------------------------------------------------------------------

/** An .onnx file's bytes: a `Blob`/`File`, an `ArrayBuffer` or a `Uint8Array`. */
export type ModelSource = Blob | ArrayBuffer | Uint8Array;

export type UploadModelOptions = RequestOptions & {
  /** `[H, W]` for a model whose input height or width is dynamic. */
  inputSize?: readonly [number, number] | readonly number[];
  /** The file name sent with the model (a `File`'s own name, else `model.onnx`). */
  filename?: string;
};

/** A stored model with its layer table; `created_now` is true when this upload stored it (201),
 *  false when the same file was stored already (200). Not enumerable: JSON stays the server's. */
export type UploadedModel = ModelInfo & { readonly created_now: boolean };

/** A layer of a model: its node output name (e.g. `/features/features.0/Conv_output_0`) or
 *  its row index in the layer table. */
export type LayerKey = string | number;

/** How the input becomes the model's input: `none`, `imagenet` or explicit steps. */
export type Preprocess = 'none' | 'imagenet' | Partial<PreprocessSpec>;

type ModelRunFields = InputParams & RequestOptions & {
  /** Default none (the input as it is; decoded images are in [0, 1]). */
  preprocess?: Preprocess;
  color_mode?: Schemas['FeaturesRequest']['color_mode'];
  /** cpu or cuda; default the server's CONVSERVE_DEVICE. The answer's `device` and `provider` say where it ran. */
  device?: Schemas['FeaturesRequest']['device'];
};

export type FeaturesParams<F extends FeaturesFormat = FeaturesFormat> = ModelRunFields & {
  /** The layers whose maps to return (npy and grid: exactly one). */
  layers: readonly LayerKey[] | LayerKey;
  format?: F;
  normalize?: Schemas['FeaturesRequest']['normalize'];
};

export type ModelExplainParams = ModelRunFields & {
  /** A Conv layer: its output name or row index. */
  layer: LayerKey;
  /** The output element to explain: `{ channel, y, x }` or `[channel, y, x]`. */
  at: Schemas['ExplainAt'] | readonly [number, number, number];
};

/** A format=json layer of `features`: the generated fields, each channel with `png()`. */
export type FeatureMaps = Omit<FeatureLayer, 'channels'> & { channels: Array<FeatureChannel & PngMethods> };

/** The format=json answer of `features`. */
export type FeaturesJson = Omit<FeaturesResponse, 'layers'> & { layers: FeatureMaps[] };

/** What `features` resolves to for each format: json the typed answer, npy one layer's
 *  (C, H, W) maps, zip and grid a `Blob`. */
export type FeaturesResult<F extends FeaturesFormat> =
  F extends 'json' ? FeaturesJson : F extends 'npy' ? NDArray : Blob;
