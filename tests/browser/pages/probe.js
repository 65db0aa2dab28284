// The site's own (untagged) script: records what the tests look at.
window.ran = [];
window.changes = [];
window.violations = [];
window.dataLayer = window.dataLayer || [];
window.probeSawDefault = window.dataLayer.some(e => e[0] === 'consent' && e[1] === 'default');
document.addEventListener('securitypolicyviolation', e => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));
window.addEventListener('consent:change', e => window.changes.push(e.detail));
