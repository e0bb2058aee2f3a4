// A validator for the JSON Schema subset stage output schemas use: type
// (one or a list, integer included), properties, required,
// additionalProperties, items, enum, const, minimum/maximum,
// minLength/maxLength, minItems/maxItems, anyOf/oneOf/allOf. It returns a
// list of problems, each with the path it concerns; empty means valid.

function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function matchesType(v, t) {
  const actual = typeOf(v);
  return actual === t || (t === "number" && actual === "integer");
}

export function validate(schema, value, path = "$") {
  const out = [];
  if (!schema || typeof schema !== "object") return out;
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => matchesType(value, t))) {
      out.push(`${path}: expected ${types.join(" or ")}, got ${typeOf(value)}`);
      return out;
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    out.push(`${path}: must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(", ")}`);
  }
  if (schema.const !== undefined && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    out.push(`${path}: must be ${JSON.stringify(schema.const)}`);
  }
  const t = typeOf(value);
  if (t === "integer" || t === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) out.push(`${path}: must be ≥ ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) out.push(`${path}: must be ≤ ${schema.maximum}`);
  }
  if (t === "string") {
    if (schema.minLength !== undefined && value.length < schema.minLength) out.push(`${path}: must have at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) out.push(`${path}: must have at most ${schema.maxLength} characters`);
  }
  if (t === "array") {
    if (schema.minItems !== undefined && value.length < schema.minItems) out.push(`${path}: must have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) out.push(`${path}: must have at most ${schema.maxItems} items`);
    if (schema.items && typeof schema.items === "object") value.forEach((v, i) => out.push(...validate(schema.items, v, `${path}[${i}]`)));
  }
  if (t === "object") {
    for (const k of schema.required || []) if (!(k in value)) out.push(`${path}: missing required property "${k}"`);
    const props = schema.properties || {};
    for (const [k, v] of Object.entries(value)) {
      if (props[k]) out.push(...validate(props[k], v, `${path}.${k}`));
      else if (schema.additionalProperties === false) out.push(`${path}: property "${k}" is not allowed`);
      else if (schema.additionalProperties && typeof schema.additionalProperties === "object") out.push(...validate(schema.additionalProperties, v, `${path}.${k}`));
    }
  }
  for (const s of schema.allOf || []) out.push(...validate(s, value, path));
  if (schema.anyOf && !schema.anyOf.some((s) => validate(s, value, path).length === 0)) out.push(`${path}: matches none of the allowed shapes`);
  if (schema.oneOf && schema.oneOf.filter((s) => validate(s, value, path).length === 0).length !== 1) out.push(`${path}: must match exactly one allowed shape`);
  return out;
}
