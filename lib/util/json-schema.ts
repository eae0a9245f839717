// JSON-schema fragments shared by the analysis and plan formats.

/** Per-block shapes of a model: query heads, KV heads, MLP width (0 = removed). */
export const layerShapesSchema = {
  type: 'array',
  minItems: 1,
  items: {
    type: 'object',
    required: ['nHead', 'nKvHead', 'ffn'],
    properties: { nHead: { type: 'integer', minimum: 0 }, nKvHead: { type: 'integer', minimum: 0 }, ffn: { type: 'integer', minimum: 0 } },
  },
} as const;
