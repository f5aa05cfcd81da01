"""What every layer shares: requests, results and their shapes, validation, the independence rule, functions.

  requests      the ``hessian=`` argument parsed into a HessianRequest
  results       Derivatives, the canonical shapes and the squeezing rules (finalize)
  validation    checks of x and of f's output; x read into the canonical (N, d) batch
  independence  the sample-independence rule and its checks
  functions     the elementwise functions the kernels serve (the compiled table + torch implementations)
"""
