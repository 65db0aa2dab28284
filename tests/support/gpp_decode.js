// Decodes GPP strings with IAB Tech Lab's own library (@iabgpp/cmpapi) for the region tests.
// Reads a JSON list of GPP strings on stdin and prints, for each, the decoded sections
// ({sectionName: {field: value}}) and the section ids the library finds, or its error.
// An item {"encode": [section names]} instead asks the library to encode those sections
// (default values) and prints its header: the ids as IAB's own encoder writes them.
const { GppModel } = require('@iabgpp/cmpapi');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const out = input.map((s) => {
  try {
    if (s && s.encode) {
      const m = new GppModel();
      for (const name of s.encode) m.setFieldValue(name, name == 'uspv1' ? 'Notice' : 'SaleOptOut', name == 'uspv1' ? 'Y' : 2);
      return { header: m.encode().split('~')[0] };
    }
    const m = new GppModel(s);
    return { sections: m.toObject(), ids: m.getSectionIds(), reencoded: m.encode() };
  } catch (e) {
    return { error: String(e && e.message || e) };
  }
});
process.stdout.write(JSON.stringify(out));
