// Card entry with Stripe Elements: the card form carries the publishable key and the SetupIntent's
// client secret as data attributes; on submit Stripe.js confirms the SetupIntent and the form is
// posted with the PaymentMethod id only.
(function () {
  var form = document.getElementById('card-form'),
    pm = document.getElementById('payment_method_id'),
    out = document.getElementById('card-errors'),
    btn = document.getElementById('save-card');
  var stripe = Stripe(form.dataset.publishableKey),
    card = stripe.elements().create('card');
  card.mount('#card-element');
  form.addEventListener('submit', function (ev) {
    if (pm.value) return;
    ev.preventDefault();
    btn.disabled = true;
    out.textContent = '';
    stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card: card } }).then(function (r) {
      if (r.error) {
        out.textContent = (r.error && r.error.message) || 'The card was not accepted.';
        btn.disabled = false;
        return;
      }
      var id = r.setupIntent.payment_method;
      pm.value = (typeof id === 'string') ? id : id.id;
      form.submit();
    });
  });
})();
