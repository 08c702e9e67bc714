// Sorts `table.sortable` by the clicked (or Enter-pressed) column; numbers compare as numbers.
document.querySelectorAll('table.sortable th').forEach(function(th,i){th.tabIndex=0;
var go=function(){var t=th.closest('table'),b=t.tBodies[0],asc=th.getAttribute('aria-sort')!=='ascending';
t.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort')});th.setAttribute('aria-sort',asc?'ascending':'descending');
var v=function(r){return r.cells[i]?r.cells[i].textContent.trim():''};
Array.prototype.slice.call(b.rows).sort(function(a,c){var x=v(a),y=v(c),nx=parseFloat(x),ny=parseFloat(y);
var r=(!isNaN(nx)&&!isNaN(ny)&&/^-?[0-9.]/.test(x)&&/^-?[0-9.]/.test(y))?nx-ny:x.localeCompare(y);return asc?r:-r})
.forEach(function(r){b.appendChild(r)})};th.addEventListener('click',go);
th.addEventListener('keydown',function(e){if(e.key==='Enter')go()})});
