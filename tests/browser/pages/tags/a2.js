window.ran.push('a2');
window.dataLayer.push({event: 'tag-ran', tag: 'a2'});
