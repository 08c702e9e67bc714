// Card entry with Braintree Hosted Fields: the card form carries the client token as a data
// attribute; on submit the fields are tokenized and the form is posted with the one-time nonce only.
(function () {
  var form = document.getElementById('card-form'),
    nonce = document.getElementById('payment_method_nonce'),
    out = document.getElementById('card-errors'),
    btn = document.getElementById('save-card');
  btn.disabled = true;
  braintree.client.create({ authorization: form.dataset.clientToken }, function (err, client) {
    if (err) { out.textContent = err.message; return; }
    braintree.hostedFields.create({
      client: client,
      fields: { number: { selector: '#bt-number' }, expirationDate: { selector: '#bt-expiration' }, cvv: { selector: '#bt-cvv' } }
    }, function (err, fields) {
      if (err) { out.textContent = err.message; return; }
      btn.disabled = false;
      form.addEventListener('submit', function (ev) {
        if (nonce.value) return;
        ev.preventDefault();
        btn.disabled = true;
        out.textContent = '';
        fields.tokenize(function (err, payload) {
          if (err) { out.textContent = err.message || 'The card was not accepted.'; btn.disabled = false; return; }
          nonce.value = payload.nonce;
          form.submit();
        });
      });
    });
  });
})();
