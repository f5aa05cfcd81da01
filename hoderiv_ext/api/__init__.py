"""The public entry points: argument handling, one engine choice, the result's shapes.

  derivatives   derivatives(f, x, hessian=...): value, gradient and second derivatives per sample
  elementwise   elementwise_derivatives(fn, x, order): (y, y', y'', ...) of an elementwise function
  parameters    hessian_rows(loss, params, rows) and newton_step(loss, params): parameter space
"""
