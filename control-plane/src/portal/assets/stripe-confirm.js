// 3-D Secure: the confirm form carries the publishable key and the PaymentIntent's client secret as
// data attributes; Stripe.js runs the bank's challenge, then the form is posted and the server asks
// Stripe how the payment ended.
(function () {
  var form = document.getElementById('confirm-form'), done = false;
  var stripe = Stripe(form.dataset.publishableKey);
  form.addEventListener('submit', function (ev) {
    if (done) return;
    ev.preventDefault();
    stripe.confirmCardPayment(form.dataset.clientSecret).then(function (r) {
      if (r.error) {
        document.getElementById('confirm-errors').textContent = r.error.message || 'Not confirmed.';
      }
      done = true;
      form.submit();
    });
  });
})();
